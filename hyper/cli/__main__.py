from hyper.cli.app import main

main()
