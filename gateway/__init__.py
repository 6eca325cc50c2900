"""The privileged gateway: kernel data path adapters, the session engine and the control socket."""
