"""The promise machine (issue #11): a manifest author, the outside world and reconcile
interleave against each emulator; the product's promises are checked after every step."""
