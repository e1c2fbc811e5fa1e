"""``python -m uni_fold.train`` = ``train-uni-fold`` (also under ``torchrun -m``)."""
import sys

from uni_fold.train.cli import main

sys.exit(main())
