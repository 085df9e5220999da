"""What to measure: the spec-config file (`spec.py`), models, prompts, load levels, and how much
evidence a verdict needs (`sequential.py`)."""
