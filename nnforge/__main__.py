from nnforge.cli import main

main()
