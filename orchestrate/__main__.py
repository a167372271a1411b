from orchestrate._cli import main

main()
