from smu.cli import main

main()
