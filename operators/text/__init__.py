"""Text operators and their CPU stages: tokenize, prompts, embed, generate."""
