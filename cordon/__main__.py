from cordon.cli import main

raise SystemExit(main())
