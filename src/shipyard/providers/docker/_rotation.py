"""Changing the database role's password (``shipyard db rotate-password``), and undoing it."""

from __future__ import annotations

from pathlib import PurePosixPath

from shipyard.database import DatabaseError, PasswordRotation, password_refused, scram_verifier
from shipyard.providers.docker._base import StepsBase
from shipyard.providers.docker._env import database_url, with_values
from shipyard.providers.docker._names import LABEL
from shipyard.state import Release


class Rotation(StepsBase):
    """The steps of ``deploy.RotationSteps``."""

    def rotate_password(self, rotation: PasswordRotation, release: Release) -> str:
        """Give the database role the password the env file holds now (unless it logs in with it
        already) and every retained release's saved environment the matching database URL, so
        ``release`` starts with it in ``release.slot`` and a rollback finds working credentials.
        The password goes over the container's local socket as a SCRAM verifier, on stdin.
        ``rotation`` records each change just before it is made, for ``restore_password``."""
        database, section = self._database(), self.config.database
        if database is None or section is None:
            raise DatabaseError("this environment has no database run by shipyard")
        done = []
        refused = self._login_error(database)
        if refused is None:
            done.append(f"role {section.user} logs in with the env file's password already")
        elif not password_refused(refused):  # a new password would not help
            raise DatabaseError(
                f"the app's credentials do not log in to the database for another reason than "
                f"the password (role {section.user!r}, database {section.name!r}): {refused}",
                hint="nothing was changed",
            )
        else:
            previous = database.role_password()
            verifier = scram_verifier(self.config.secrets.get(section.password_env) or "")
            for value in (previous, verifier):
                if value:
                    self.config.masker.add(value)
            rotation.previous, rotation.altered = previous, True
            self._fence()
            database.set_role_password(verifier)
            error = self._login_error(database)
            if error is not None:
                raise DatabaseError(
                    f"role {section.user!r} still cannot log in after its password was changed: "
                    f"{error}"
                )
            done.append(f"role {section.user} has the password {section.password_env!r} holds")
        values = {
            section.url_env: database_url(self.config, self.names),
            section.password_env: self.config.secrets.get(section.password_env) or "",
        }
        refreshed = 0
        for kept in self.ctx.store.releases():
            path = self.layout.release_env(kept.id)
            text = self.host.get(path)
            if text is None:  # started with the env file's values, which have the password
                continue
            rotation.files[str(path)] = text
            self._fence()
            self._write(path, with_values(text.decode(), values, source=str(path)))
            refreshed += 1
        done.append(f"the database URL of {refreshed} retained release(s) renewed")
        kept_container = self.slot_container(release.slot)
        if (
            kept_container is not None
            and kept_container.name != self.names.live
            and kept_container.labels.get(f"{LABEL}.release") == release.id
        ):
            # Kept stopped with the environment it was created with; started again, it would
            # log in with the old password.
            self._fence()
            self.docker.compose_down(self.names.slot(release.slot))
            done.append(f"removed {kept_container.name}: it had the old database URL")
        return "; ".join(done)

    def restore_password(self, rotation: PasswordRotation) -> str:
        """Undo what ``rotation`` records: the saved environments as they were, and the role's
        previous password (its verifier as it was stored)."""
        done = []
        for path, text in rotation.files.items():
            self._fence()
            self.host.put(PurePosixPath(path), text, mode=0o600)
        if rotation.files:
            done.append(f"{len(rotation.files)} saved environment(s) as they were")
        database = self._database()
        if rotation.altered and database is not None:
            self._fence()
            database.set_role_password(rotation.previous)
            done.append("the database role has its previous password again")
        return "; ".join(done) or "nothing had changed"
