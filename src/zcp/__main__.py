from zcp.cli.app import main

main()
