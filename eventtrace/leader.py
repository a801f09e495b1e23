"""Lease leader election (DESIGN §2, §5): one replica exports, the others stand by.

kubernetes-asyncio's elector holds the Lease; this module adds what a collector needs
around it: a term of leadership that ends at once when a renewal fails (its work is
cancelled: no two leaders export), a return to standby after that, and a release on a
clean stop that clears the holder (as client-go's ReleaseOnCancel), so a standby takes
over within its retry period instead of waiting out the lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from kubernetes_asyncio import client
from kubernetes_asyncio.client.api_client import ApiClient
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.leaderelection.electionconfig import Config
from kubernetes_asyncio.leaderelection.leaderelection import LeaderElection
from kubernetes_asyncio.leaderelection.resourcelock.leaselock import LeaseLock

from eventtrace.metrics import Metrics
from eventtrace.source.kube import TRANSPORT_ERRORS

log = logging.getLogger("eventtrace.leader")


class Leadership:
    """Runs `lead` whenever this replica holds the Lease; `lead` is cancelled the moment
    the Lease is lost, and the replica stands by again."""

    def __init__(
        self,
        api_client: ApiClient,
        lease: tuple[str, str],
        identity: str,
        timings: tuple[float, float, float],
        metrics: Metrics,
    ) -> None:
        self.namespace, self.name = lease
        self.identity = identity
        self.lease_duration, self.renew_deadline, self.retry_period = timings
        self._lock = LeaseLock(self.name, self.namespace, identity, api_client)
        self._metrics = metrics
        self._term: asyncio.Task[None] | None = None
        self._failed: asyncio.Future[None] | None = None  # a term's work raised

    @property
    def leading(self) -> bool:
        return self._term is not None and not self._term.done()

    async def run(self, lead: Callable[[], Awaitable[None]]) -> None:
        """Stand by, lead while holding the Lease, stand by again: until cancelled."""
        log.info("standing by for lease %s/%s as %s", self.namespace, self.name, self.identity)
        self._failed = asyncio.get_running_loop().create_future()
        while True:
            election = LeaderElection(
                Config(
                    self._lock,
                    # A Lease holds whole seconds (leaseDurationSeconds): so does the elector.
                    max(1, round(self.lease_duration)),
                    self.renew_deadline,
                    self.retry_period,
                    onstarted_leading=lambda: self._lead(lead),
                    onstopped_leading=self._stood_down,
                )
            )
            electing = asyncio.ensure_future(election.run())
            try:
                await asyncio.wait({electing, self._failed}, return_when="FIRST_COMPLETED")
                if self._failed.done():
                    self._failed.result()  # the term's work failed: so does this
                electing.result()
            except TRANSPORT_ERRORS as error:  # the elector lets these through
                log.warning("lease %s/%s: %s; retrying", self.namespace, self.name, error)
                await self._stood_down()
                await asyncio.sleep(self.retry_period)
            finally:
                electing.cancel()

    async def _lead(self, lead: Callable[[], Awaitable[None]]) -> None:
        self._term = asyncio.current_task()
        log.info("leading (lease %s/%s held by %s)", self.namespace, self.name, self.identity)
        self._metrics.leader.set(1)
        try:
            await lead()
        except Exception as error:
            if self._failed is not None and not self._failed.done():
                self._failed.set_exception(error)
            raise

    async def _stood_down(self) -> None:
        """The Lease was lost (or never renewed): the term's work is cancelled by the
        elector; wait until it has stopped before standing by again."""
        term, self._term = self._term, None
        self._metrics.leader.set(0)
        if term is not None:
            log.warning("lost the lease %s/%s: stopped exporting, standing by",
                        self.namespace, self.name)  # fmt: skip
            term.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await term

    async def finish(self, within: float) -> None:
        """A clean stop: let the term's work end by itself (its flush and save), for at
        most `within` seconds."""
        term = self._term
        if term is not None and not term.done():
            await asyncio.wait({term}, timeout=within)

    async def release(self) -> None:
        """Clear the holder, if it is us, so a standby need not wait out the lease."""
        self._metrics.leader.set(0)
        try:
            lease = await self._lock.api_instance.read_namespaced_lease(self.name, self.namespace)
        except (ApiException, *TRANSPORT_ERRORS) as error:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, error)
            return
        spec = lease.spec
        if spec is None or spec.holder_identity != self.identity:
            return
        spec.holder_identity = ""  # as client-go releases: no holder
        spec.lease_duration_seconds = 1
        spec.renew_time = datetime.now(UTC)
        try:
            await self._lock.api_instance.replace_namespaced_lease(
                self.name, self.namespace, client.V1Lease(metadata=lease.metadata, spec=spec)
            )
        except (ApiException, *TRANSPORT_ERRORS) as error:
            log.warning("could not release lease %s/%s: %s", self.namespace, self.name, error)
            return
        log.info("released lease %s/%s", self.namespace, self.name)
