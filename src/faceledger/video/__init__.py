"""Video: decode frames with timestamps and rotation, track faces, choose best shots, redact."""
