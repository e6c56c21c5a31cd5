"""A trial whose worker died before its first heartbeat is failed, not left running for ever."""

import time
import warnings

import optuna
from optuna.trial import TrialState

from sam3_adapt.tune.run import _fail_stale_trials, _storage


def test_a_trial_killed_before_its_first_heartbeat_is_failed_after_the_grace_period(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study = optuna.create_study(storage=_storage(f"sqlite:///{tmp_path / 'study.db'}", heartbeat_s=1))
    study.ask()  # created and running, with no heartbeat: what a worker killed at that moment leaves
    _fail_stale_trials(study)  # Optuna alone would skip it for ever; it gets one heartbeat now
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING]
    time.sleep(3.5)  # past the grace period (2 heartbeats; SQLite keeps whole seconds), nobody beating
    _fail_stale_trials(study)
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL]
