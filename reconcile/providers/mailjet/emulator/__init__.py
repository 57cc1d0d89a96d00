"""The Mailjet API emulator: imports nothing of the client or provider it checks."""
