"""Emulator of the Mailchimp Marketing API v3 (audiences, merge fields, members, tags)."""
