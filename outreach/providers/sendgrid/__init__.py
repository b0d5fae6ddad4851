"""SendGrid: the email transport over the official SDK, and the signed event webhook's key."""
