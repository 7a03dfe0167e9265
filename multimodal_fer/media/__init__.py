"""Reading media files (audio, video) for adapters and preprocessing alike: no preprocessing here."""
