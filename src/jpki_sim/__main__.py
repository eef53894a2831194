from jpki_sim.cli import main

raise SystemExit(main())
