"""Generated chats between two friends with recall questions (see `generate.py`)."""
