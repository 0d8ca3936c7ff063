"""What tools/fuzz/mutate_*.py share: run veomni on each mutated input and
collect crashes (a signal, an exit status other than 0 or 1) and timeouts."""
import subprocess


class Runs:
    def __init__(self, veomni, timeout):
        self.veomni, self.timeout = veomni, timeout
        self.count, self.bad = 0, []

    def run(self, args, what, cwd=None):
        self.count += 1
        try:
            r = subprocess.run([self.veomni] + args, capture_output=True,
                               timeout=self.timeout, cwd=cwd)
            if r.returncode not in (0, 1):
                self.bad.append(what + (r.returncode,))
        except subprocess.TimeoutExpired:
            self.bad.append(what + ("timeout",))

    def report(self):
        print(f"{self.count} runs, {len(self.bad)} crashes or timeouts")
        for b in self.bad:
            print(*b)
        return 1 if self.bad else 0
