"""Image operators and their CPU stages: decode, embed, caption."""
