"""Trust: signing keys, signatures, and the verification of a manifest and every file it names."""
