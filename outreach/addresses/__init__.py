"""Phone numbers and email addresses: normalized, validated, masked for logs."""
