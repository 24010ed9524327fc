"""sigbus."""
