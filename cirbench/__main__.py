"""`python -m cirbench` (also what `torchrun -m cirbench train lincir ...` runs)."""

from cirbench.cli import main

if __name__ == "__main__":
    main()
