"""The baseline GPT trainer: a small decoder-only transformer on SentencePiece BPE tokens."""
