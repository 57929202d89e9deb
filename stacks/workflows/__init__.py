"""One construct per workflow: a reader finds a workflow's whole definition in one file."""
