from twin.cli.main import main

raise SystemExit(main())
