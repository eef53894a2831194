"""pytest plugin of jpki-sim (fixtures jpki_card, jpki_reader, jpki_ca): see the README."""
