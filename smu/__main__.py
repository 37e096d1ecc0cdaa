from smu.cli.app import main

main()
