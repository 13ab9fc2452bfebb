"""Media side of agent-assist: taps, audio, VAD, streaming ASR, events, the bus and the CLI.

Nothing here knows about coaching: it turns call audio (or a chat transcript) into typed
events on the bus (see ``sidecar.kernel.events``).
"""
