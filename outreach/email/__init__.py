"""Email as a channel: rendering a campaign email, and the events SendGrid reports back."""
