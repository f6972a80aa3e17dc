#!/bin/sh
# No init system in a container: never let a package's postinst start a service.
exit 101
