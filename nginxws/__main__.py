from nginxws.cli import main

raise SystemExit(main())
