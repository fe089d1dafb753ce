from lstm_plugins.cli import main

raise SystemExit(main())
