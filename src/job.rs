//! Handlers that wait for a program: instead of blocking the loop, such a handler returns
//! a [`Step::Wait`] with what to run and what to do with its result. The loop starts the
//! child, keeps serving signals and timers, and calls the continuation when the child is
//! done; the continuation may answer or wait for another program.

use std::io;

use crate::child::{self, Finished, Run};
use crate::ctx::{Ctx, Session};
use crate::error::Error;

/// What to do with a child's result: `Err` when it could not even be started. The
/// session is the loop's, so a continuation may change state (the freeze flag).
pub type Then<T> =
    Box<dyn FnOnce(&Ctx, &mut Session, io::Result<Finished>) -> Result<Step<T>, Error>>;

/// A program to run and the continuation that turns its result into the answer.
pub struct Job<T> {
    pub run: Run,
    pub then: Then<T>,
}

/// A handler's answer, now or after a program.
pub enum Step<T> {
    Done(T),
    Wait(Job<T>),
}

impl<T: 'static> Step<T> {
    /// Waits for `run`, then continues with `then`.
    pub fn wait(
        run: Run,
        then: impl FnOnce(&Ctx, &mut Session, io::Result<Finished>) -> Result<Step<T>, Error> + 'static,
    ) -> Step<T> {
        Step::Wait(Job {
            run,
            then: Box::new(then),
        })
    }

    /// Converts the eventual answer with `f`, now or in the continuation.
    pub fn map<U: 'static>(
        self,
        f: impl FnOnce(T) -> Result<U, Error> + 'static,
    ) -> Result<Step<U>, Error> {
        settle(Ok(self), |result| f(result?))
    }

    /// Continues with `f` on the eventual answer, which may wait for another program.
    pub fn then<U: 'static>(
        self,
        ctx: &Ctx,
        f: impl FnOnce(&Ctx, T) -> Result<Step<U>, Error> + 'static,
    ) -> Result<Step<U>, Error> {
        match self {
            Step::Done(v) => f(ctx, v),
            Step::Wait(job) => {
                let first = job.then;
                Ok(Step::wait(job.run, move |ctx, session, result| {
                    first(ctx, session, result)?.then(ctx, f)
                }))
            }
        }
    }

    /// Runs every program the step waits for in turn, blocking, with a session of its
    /// own: for callers without a loop (unit tests of handlers).
    pub fn finish(self, ctx: &Ctx) -> Result<T, Error> {
        self.finish_in(ctx, &mut Session::default())
    }

    /// As [`Step::finish`], in `session`.
    pub fn finish_in(self, ctx: &Ctx, session: &mut Session) -> Result<T, Error> {
        let mut step = self;
        loop {
            match step {
                Step::Done(v) => return Ok(v),
                Step::Wait(job) => step = (job.then)(ctx, session, child::run_blocking(job.run))?,
            }
        }
    }
}

/// Hands the eventual outcome of `step`, success or error (before or after its
/// programs), to `f`: for replies that report failure in their own shape.
pub fn settle<T: 'static, U: 'static>(
    step: Result<Step<T>, Error>,
    f: impl FnOnce(Result<T, Error>) -> Result<U, Error> + 'static,
) -> Result<Step<U>, Error> {
    match step {
        Err(e) => f(Err(e)).map(Step::Done),
        Ok(Step::Done(v)) => f(Ok(v)).map(Step::Done),
        Ok(Step::Wait(job)) => {
            let then = job.then;
            Ok(Step::wait(job.run, move |ctx, session, result| {
                settle(then(ctx, session, result), f)
            }))
        }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Step<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Step::Done(v) => f.debug_tuple("Done").field(v).finish(),
            Step::Wait(_) => f.write_str("Wait(..)"),
        }
    }
}
