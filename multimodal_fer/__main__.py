"""Allow ``python -m multimodal_fer`` as an alias of the ``mfer`` command."""

from multimodal_fer.cli import main

if __name__ == "__main__":
    main()
