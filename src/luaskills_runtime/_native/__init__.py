"""Private native core: Cython bindings over the C sources in ``native/``.

Nothing here is public API; the modules above wrap it."""
