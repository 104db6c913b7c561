"""One module per external service, each behind a small Protocol, the embedded default beside the real one."""
