from shared_utils.cli import main

raise SystemExit(main())
