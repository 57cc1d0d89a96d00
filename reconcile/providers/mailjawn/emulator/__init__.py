"""The MailJawn API emulator: imports nothing of the client or provider it checks."""
