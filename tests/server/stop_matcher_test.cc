#include "server/core/stop_matcher.h"

#include "gtest/gtest.h"

namespace rwkv::server {
namespace {

TEST(StopMatcher, ReleasesTextThatCannotStartAStop) {
  StopMatcher m({"\n\nUser:"});
  EXPECT_EQ(m.Push("Hello"), "Hello");
  EXPECT_EQ(m.Push(" there\n"), " there") << "a newline could start the stop string: held";
  EXPECT_EQ(m.Push("ok"), "\nok") << "it did not: released";
  EXPECT_FALSE(m.matched());
}

TEST(StopMatcher, DropsTheStopAndEverythingAfter) {
  StopMatcher m({"\n\nUser:"});
  EXPECT_EQ(m.Push("Answer.\n"), "Answer.");
  EXPECT_EQ(m.Push("\nUs"), "");
  EXPECT_EQ(m.Push("er: more"), "");
  EXPECT_TRUE(m.matched());
  EXPECT_EQ(m.matched_stop(), "\n\nUser:");
  EXPECT_EQ(m.Push("later"), "");
}

TEST(StopMatcher, StopInsideOnePieceKeepsTheTextBeforeIt) {
  StopMatcher m({"STOP"});
  EXPECT_EQ(m.Push("abcSTOPdef"), "abc");
  EXPECT_TRUE(m.matched());
}

TEST(StopMatcher, EarliestOfSeveralStopsWins) {
  StopMatcher m({"cd", "b"});
  EXPECT_EQ(m.Push("abcd"), "a");
  EXPECT_EQ(m.matched_stop(), "b");
}

TEST(StopMatcher, FlushReleasesTheHeldTail) {
  StopMatcher m({"xyz"});
  EXPECT_EQ(m.Push("abcxy"), "abc");
  EXPECT_EQ(m.Flush(), "xy");
}

TEST(StopMatcher, HoldsBackMultibyteStopPrefixesOnCharacterBoundaries) {
  StopMatcher m({"\xE4\xBD\xA0\xE5\xA5\xBD"});  // "你好"
  EXPECT_EQ(m.Push("a\xE4\xBD\xA0"), "a");
  EXPECT_EQ(m.Push("b"), "\xE4\xBD\xA0" "b");
}

TEST(StopMatcher, NoStopsPassesEverything) {
  StopMatcher m({});
  EXPECT_EQ(m.Push("anything\n\n"), "anything\n\n");
}

}  // namespace
}  // namespace rwkv::server
