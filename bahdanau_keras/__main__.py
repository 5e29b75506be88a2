import sys

from bahdanau_keras.cli import main

sys.exit(main())
