"""report.html: what an image job made, to look at."""
