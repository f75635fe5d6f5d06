from oidyolo.cli import main

raise SystemExit(main())
