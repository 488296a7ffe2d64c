"""Setting repro up in a user's own repository (``repro init``): the files it writes, and how."""
