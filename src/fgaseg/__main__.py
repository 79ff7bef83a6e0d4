from fgaseg.cli import main

raise SystemExit(main())
