import sys

from resnet34_npu.cli.launch import main

sys.exit(main())
