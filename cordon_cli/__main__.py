from cordon_cli import main

raise SystemExit(main())
