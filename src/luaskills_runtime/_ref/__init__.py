"""Reference wording: texts and checks worded like the Rust reference (luaskills 0.4.2)."""
