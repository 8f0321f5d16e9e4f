"""Library jobs: what each command does, callable from Python, writing its files and pages."""
