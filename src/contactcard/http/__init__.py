"""The HTTP layer: thin routes that turn requests into use cases and answers into JSON."""
