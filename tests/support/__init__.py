"""What the tests share: generated CIFAR-format data, the CLI in a fresh interpreter, sweep files, and the
cluster lab (onprem_lab.py: `ray up` on SSH hosts of this machine). Imported by the tests only; a test
imports from here, never from another test module (tests/test_layout.py checks it)."""
