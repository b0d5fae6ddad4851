"""What we say: organizer templates, SMS encoding and segments, the compliance copy."""
