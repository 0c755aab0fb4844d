from contactcard.cli import main

main()
